from mmlupro_local.cli import main

main()
