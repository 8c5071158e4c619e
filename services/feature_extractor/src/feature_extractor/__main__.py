from feature_extractor.main import main

main()
