from vqcodec.cli import main

raise SystemExit(main())
