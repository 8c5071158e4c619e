from classifier.main import main

main()
