from provenance.main import main

main()
