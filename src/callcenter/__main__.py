from callcenter.cli import main

raise SystemExit(main())
