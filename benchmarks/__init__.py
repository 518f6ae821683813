"""The benchmarks: entry points of their own, so they set the process-wide warning filter as `bot` does."""

import warnings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
