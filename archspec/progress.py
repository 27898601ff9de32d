"""Progress bars on stderr, quiet when stderr is not a terminal unless asked."""

import os
import sys


def progress_bar(total=None, desc="", unit="it", **kwargs):
    from tqdm import tqdm

    disable = os.environ.get("CROSSFRAME_PROGRESS", "auto") == "0"
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable, dynamic_ncols=True,
                mininterval=0.5, **kwargs)
