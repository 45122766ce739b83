from voxar.cli import main

main()
