"""What kind of file a path is, for the readers that must refuse anything but a regular file.

A FIFO named like a checkpoint or an image would block the reader (and the hash beside it) forever,
``/dev/zero`` never ends, a socket cannot be read: ``weight_transfer``'s checkpoint readers and
``jax_impl``'s image decoder ask here before they open anything, and say what they found.
"""

import os
import stat


def special_kind(mode):
    """What a non-regular ``st_mode`` is, in words ("a FIFO (named pipe)", "a character device"...)."""
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return what
    return "not a regular file"


def not_a_regular_file(path):
    """None when ``path`` is a regular file (symlinks followed); else what it is, in words. ``OSError``
    (a missing path, no permission) propagates for the caller to word."""
    mode = os.stat(path).st_mode
    return None if stat.S_ISREG(mode) else special_kind(mode)
