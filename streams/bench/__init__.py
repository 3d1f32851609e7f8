"""The benchmark harness behind ``guardian bench``: open-loop load, a raw Kafka baseline
measured in the same run, and micro-benchmarks of the codec and the pure cores."""
