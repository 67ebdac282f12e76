import sys
import types

import pytest

from selfreward.config import compose
from selfreward.errors import ConfigError
from selfreward.generation import load_generator
from selfreward.generation.base import Sampling


@pytest.fixture(scope="module")
def hf(tiny_checkpoint):
    return load_generator(compose(["generation.batch_size=2"]), str(tiny_checkpoint))


def test_hf_generate_shapes_and_order(hf):
    from selfreward.templates import chat_prompt

    prompts = [
        chat_prompt(hf.tokenizer, p) for p in ("a much longer question about the sea", "hi", "What is 2 plus 3?")
    ]
    out = hf.generate(prompts, Sampling(temperature=1.0, top_p=1.0, max_new_tokens=8, n=3, seed=1))
    assert [len(o) for o in out] == [3, 3, 3]
    assert all(isinstance(t, str) and "<|im_end|>" not in t for o in out for t in o)
    # length sorting inside batches must not reorder results: each prompt alone gives the same greedy text
    greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=8)
    together = hf.generate(prompts, greedy)
    alone = [hf.generate([p], greedy)[0] for p in prompts]
    assert together == alone


def test_the_decode_loop_writes_what_generate_writes(hf):
    """Our loop (a shared prefix computed once, a prompt prefilled once for its n rows, finished rows
    leaving the batch) against transformers' `generate` with the same seeded sampler: the same text,
    sampled and greedy. Stop tokens the tiny model writes often make rows finish at different steps."""
    import torch
    from transformers import LogitsProcessorList

    from selfreward.generation.base import derive_seed, request_seeds
    from selfreward.generation.hf import MIN_SHARED_PREFIX, _common_prefix
    from selfreward.generation.sampling import SeededSampling
    from selfreward.templates import chat_prompt

    asks = ("a much longer question about the sea", "hi", "What is 2 plus 3?", "name three colours of the sky")
    rubric = "Review the user's question and the answer below, then score the answer from 1 to 5 with care. " * 2
    plain, judged = [chat_prompt(hf.tokenizer, a) for a in asks], [chat_prompt(hf.tokenizer, rubric + a) for a in asks]
    assert _common_prefix(hf._encode(judged)) >= MIN_SHARED_PREFIX > _common_prefix(hf._encode(plain))
    prompts = plain
    frequent = torch.tensor(sum(hf._encode(hf.generate(prompts, Sampling(1.0, 1.0, 24, n=2, seed=9))[0]), []))
    saved = hf.stop_ids
    hf.stop_ids = sorted({*saved, *frequent.bincount().topk(3).indices.tolist()})

    def reference(sampling):
        out, seeds = [[] for _ in prompts], request_seeds(sampling, len(prompts))
        for idx, batch in hf._batches(hf._encode(prompts), "reference"):
            batch = {k: v.repeat_interleave(sampling.n, dim=0) for k, v in batch.items()}
            rows = [derive_seed(seeds[i], k) for i in idx for k in range(sampling.n)]
            processors = LogitsProcessorList([SeededSampling(rows, sampling.temperature, sampling.top_p)]
                                             if sampling.temperature > 0 else [])
            seqs = hf.model.generate(**batch, max_new_tokens=sampling.max_new_tokens, do_sample=False,
                                     logits_processor=processors, pad_token_id=hf.tokenizer.pad_token_id,
                                     eos_token_id=hf.stop_ids)
            texts = hf.tokenizer.batch_decode(seqs[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            for j, i in enumerate(idx):
                out[i] = [t.strip() for t in texts[j * sampling.n:(j + 1) * sampling.n]]
        return out

    try:
        for prompts in (plain, judged):  # the second with a shared prefix, computed once
            for sampling in (Sampling(1.0, 0.9, 16, n=3, seed=4), Sampling(0.7, 1.0, 16, n=2, seed=2),
                             Sampling(0.0, 1.0, 16)):
                ours = hf.generate(prompts, sampling)
                assert ours == reference(sampling)
                if sampling.n == 3:  # rows did finish at different steps, some before the limit
                    lengths = [len(ids) for ids in hf._encode([t for o in ours for t in o])]
                    assert min(lengths) < 8 and len(set(lengths)) > 2
    finally:
        hf.stop_ids = saved


def test_hf_seeded_sampling_is_reproducible(hf):
    prompts = ["<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"]
    s = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=10, n=2, seed=5)
    assert hf.generate(prompts, s) == hf.generate(prompts, s)


def test_hf_each_prompt_draws_from_its_own_stream(hf):
    """Two copies of one prompt draw differently; a prompt draws the same whatever shares its batch
    (length sorting, batch size, another chunk or rank), given its own seed."""
    from selfreward.generation.base import request_seeds

    ask = ["<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
           "<|im_start|>user\na much longer question about the sea and the sky<|im_end|>\n<|im_start|>assistant\n"]
    s = Sampling(temperature=1.0, top_p=0.9, max_new_tokens=12, n=2, seed=11)
    both = hf.generate([ask[0], ask[0], ask[1]], s)
    assert both[0] != both[1]
    seeds = request_seeds(s, 3)
    alone = [hf.generate([p], Sampling(1.0, 0.9, 12, n=2, seeds=(seed,)))[0] for p, seed in zip(
        [ask[0], ask[0], ask[1]], seeds)]
    assert alone == both
    hf.batch_size = 1
    try:
        assert hf.generate([ask[0], ask[0], ask[1]], s) == both
    finally:
        hf.batch_size = 2


def test_seeded_sampling_follows_the_distribution():
    import torch

    from selfreward.generation.sampling import SeededSampling

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    picks = SeededSampling(list(range(4000)), 1.0, 1.0)(None, logits).argmax(-1)
    shares = torch.bincount(picks, minlength=4).float() / 4000
    assert shares.tolist() == pytest.approx([0.5, 0.3, 0.15, 0.05], abs=0.03)
    # top-p 0.7 keeps the two most probable tokens (0.5 + 0.3 >= 0.7), renormalized
    picks = SeededSampling(list(range(4000)), 1.0, 0.7)(None, logits).argmax(-1)
    shares = torch.bincount(picks, minlength=4).float() / 4000
    assert shares.tolist() == pytest.approx([0.625, 0.375, 0.0, 0.0], abs=0.03)


def test_nucleus_from_a_partial_ranking_is_the_full_stable_sort():
    """The top-k shortcut (falling back to larger k, then a full sort) draws exactly what a stable
    descending sort of the whole vocabulary draws, on bf16-rounded logits (many ties), including ties
    that straddle the k-th place."""
    import torch

    from selfreward.generation.sampling import sample_nucleus

    torch.manual_seed(0)
    for scale in (0.5, 3.0, 12.0):
        probs = torch.softmax((torch.randn(64, 5000) * scale).bfloat16().float() / 0.8, dim=-1)
        u = torch.rand(64)
        for top_p in (0.3, 0.9, 0.95, 0.999):
            full = sample_nucleus(probs, u, top_p, ranks=())
            assert torch.equal(sample_nucleus(probs, u, top_p), full)
            assert torch.equal(sample_nucleus(probs, u, top_p, ranks=(2, 16)), full)
    # six tokens tied at 0.1 around the 4th place: which of them top-p keeps is decided by token id
    probs = torch.tensor([[0.1, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]])
    for v in torch.linspace(0, 0.999, 50):
        u = v.reshape(1)
        assert torch.equal(sample_nucleus(probs, u, 0.55, ranks=(4,)), sample_nucleus(probs, u, 0.55, ranks=()))
    picks = {sample_nucleus(probs, v.reshape(1), 0.55, ranks=(4,)).item() for v in torch.linspace(0, 0.999, 50)}
    assert picks == {0, 1, 2, 3}  # 0.3, then the lowest ids of the tie while the mass before is < 0.55


def test_hf_next_token_probs(hf):
    ids = hf.tokenizer.convert_tokens_to_ids(["0", "1", "2"])
    probs = hf.next_token_probs(["Score: ", "hello there Score: "], ids)
    assert len(probs) == 2 and all(len(p) == 3 for p in probs)
    assert all(0.0 <= x <= 1.0 for p in probs for x in p)


def test_common_prefix_leaves_every_prompt_a_token_of_its_own():
    from selfreward.generation.hf import _common_prefix

    assert _common_prefix([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert _common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # identical: the last token is still read
    assert _common_prefix([[7], [7, 8]]) == 0


def test_shared_prefix_scoring_equals_full_scoring(hf):
    from selfreward.judge import judge_template, score_token_ids
    from selfreward.schema import JudgeConfig
    from selfreward.templates import chat_prompt

    template = judge_template(JudgeConfig())
    answers = ["Paris.", "It is the capital city of France, Paris.", "no", "London is the answer here, I think."]
    prefix, ids = score_token_ids(hf.tokenizer, 5)
    prompts = [chat_prompt(hf.tokenizer, template.render(instruction="What is the capital of France?", response=a))
               + prefix for a in answers]
    hf.prefix_cache = False
    full = hf.next_token_probs(prompts, ids)
    hf.prefix_cache = True
    shared = hf.next_token_probs(prompts, ids)  # the rubric and question are computed once
    assert [x for row in shared for x in row] == pytest.approx([x for row in full for x in row], abs=1e-5)


class _FakeVLLM(types.ModuleType):
    """A stand-in for vLLM's documented API: LLM(model=...), LLM.generate(prompts, SamplingParams),
    LLM.get_tokenizer(), outputs[i].outputs[j].text and .logprobs[pos][token_id].logprob."""

    def __init__(self):
        super().__init__("vllm")
        fake = self

        class SamplingParams:
            def __init__(
                self, n=1, temperature=1.0, top_p=1.0, max_tokens=16, seed=None, logprobs=None,
                skip_special_tokens=True, stop_token_ids=None,
            ):
                self.n, self.max_tokens, self.logprobs, self.seed = n, max_tokens, logprobs, seed
                fake.stop_token_ids = stop_token_ids

        class LLM:
            def __init__(self, model, **kwargs):
                fake.init_kwargs = {"model": model, **kwargs}

            def get_tokenizer(self):
                return types.SimpleNamespace(eos_token_id=3, chat_template="{{ messages }}")

            def generate(self, prompts, params, use_tqdm=True):
                # vLLM takes one SamplingParams for all prompts, or a list with one per prompt
                params = params if isinstance(params, list) else [params] * len(prompts)
                assert len(params) == len(prompts)
                ns = types.SimpleNamespace
                if params[0].logprobs:
                    top = {7: ns(logprob=-0.5), 9: ns(logprob=-2.0)}
                    return [ns(outputs=[ns(text="", logprobs=[top])]) for _ in prompts]
                # a seeded request draws the same samples every time, and other samples under another seed
                return [ns(outputs=[ns(text=f" {p}#{j}@{q.seed} ") for j in range(q.n)])
                        for p, q in zip(prompts, params)]

        self.LLM, self.SamplingParams = LLM, SamplingParams


def test_vllm_adapter_against_stand_in(monkeypatch):
    fake = _FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake)
    gen = load_generator(compose(["backend=vllm", "launch.in_process=false", "vllm.tensor_parallel_size=2"]), "/ckpt")
    assert fake.init_kwargs["model"] == "/ckpt" and fake.init_kwargs["tensor_parallel_size"] == 2
    assert fake.init_kwargs["enable_prefix_caching"] is True
    from selfreward.generation.base import request_seeds

    s = Sampling(1.0, 0.9, 5, n=2, seed=3)
    first, second = request_seeds(s, 2)
    assert first != second  # each prompt has a seed of its own
    assert gen.generate(["a", "a"], s) == [[f"a#0@{first}", f"a#1@{first}"], [f"a#0@{second}", f"a#1@{second}"]]
    assert fake.stop_token_ids == [3]  # stops at the tokenizer's EOS, as the HF backend does
    probs = gen.next_token_probs(["x"], [7, 8, 9])
    assert probs[0][1] == 0.0 and abs(probs[0][0] - 0.6065) < 1e-3 and abs(probs[0][2] - 0.1353) < 1e-3


def test_vllm_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'selfreward\[vllm\]'"):
        load_generator(compose(["backend=vllm", "launch.in_process=false"]), "/ckpt")
