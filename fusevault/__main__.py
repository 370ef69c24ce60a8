import os

if "FUSEVAULT_SERVER" in os.environ:  # a mount's server (fs/daemon.py): no command line to parse
    from fusevault.fs.server import main
else:
    from fusevault.cli import main

raise SystemExit(main())
