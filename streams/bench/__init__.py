"""The benchmark harness behind ``guardian bench``: open-loop load, a raw Kafka baseline
measured in the same run, the search for each system's sustainable rate, a soak of one
worker, and micro-benchmarks of the codec and the pure cores."""
