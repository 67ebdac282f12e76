import sys

from selfreward.cli import main

sys.exit(main())
