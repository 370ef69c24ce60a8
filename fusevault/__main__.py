from fusevault.cli import main

raise SystemExit(main())
