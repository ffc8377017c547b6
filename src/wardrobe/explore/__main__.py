from wardrobe.explore.server import main

main()
