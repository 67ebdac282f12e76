"""Training entry points, each run under `accelerate launch` by the orchestrator (or by hand):

    accelerate launch --config_file launch/cpu_zero2.yaml -m selfreward.train.sft --run-dir R --round 0
    accelerate launch --config_file launch/cpu_zero3.yaml -m selfreward.train.dpo --run-dir R --round 1

They read only the frozen `<run_dir>/config.yaml`, train with TRL, and save the next model.
"""
