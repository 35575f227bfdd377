from campus.cli import main

raise SystemExit(main())
