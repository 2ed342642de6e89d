from rmodelpack.cli import main

raise SystemExit(main())
