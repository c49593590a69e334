from cnn_tracker.cli import main

if __name__ == "__main__":
    main()
