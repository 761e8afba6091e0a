from vesseltree.cli import main

raise SystemExit(main())
