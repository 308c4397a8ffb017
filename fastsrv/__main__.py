from fastsrv.cli import console_main

console_main()
