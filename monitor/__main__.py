"""`python -m monitor` is the same as `camnet`."""

from monitor.cli import main

raise SystemExit(main())
