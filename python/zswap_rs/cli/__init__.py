"""The `zswap-rs` command line: what would zswap do with this memory, and what does it save?

- `profile` (`profile.py`): real pages (a live process's private anonymous
  memory, a page dump, or a workload it starts) through a fresh `Zswap` per
  compressor: same-filled share, ratio, rejects, pool overhead, ns per page.
- `simulate` (`simulate.py`): the 2013 kernel-build experiment, through a RAM
  budget with and without zswap (the experiment is `zswap_rs.simulate`).
- `versus` (`versus.py`, root): the same NumPy job through the kernel's swap,
  the kernel's zswap and a zswap-rs `Region` (the run is `zswap_rs.versus`).
- `mkswap` (`mkswap.py`): a zswap-rs swap file's header (`zswap_rs.mkswap`).
- `info` (`info.py`): the version, the machine, its compressors and userfaultfd.

How it is laid out: `app` builds the parser from each command's
`options.Command` and runs it; `options` holds the option groups that
several commands share (declared once) and the argument types; `sources`
reads the pages a command works on; `library` imports the compiled module
when a command needs it; `report` formats everything a person sees (tables,
the progress bar, messages, plots). To add a command, see `app`.

Exit codes (`zswap_rs._command_error`): 0 ok; 2 bad usage or input
(argparse's own code: a bad option, a missing PID, a page dump of a bad
length); 1 an internal failure, above all a page that came back different
from what was stored; 130 after Ctrl-C. Expected errors are one
`CommandError`, printed as one line on stderr, `zswap-rs: error: ...`, with
no traceback.

Only the standard library is imported here; matplotlib is imported when
`--plot` asks for it.
"""

from __future__ import annotations

from .app import main

__all__ = ["main"]
