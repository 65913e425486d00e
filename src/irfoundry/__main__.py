from irfoundry.cli import main

raise SystemExit(main())
