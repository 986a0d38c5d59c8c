from correlator.cli import main

raise SystemExit(main())
