from simulators.serial.cli import main

raise SystemExit(main())
