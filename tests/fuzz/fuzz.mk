# Fuzz targets: `make fuzz` runs each with libFuzzer; `make fuzz-replay`
# (part of `make test`) replays tests/fuzz/corpus/<target>/ without fuzzing.
fuzz-replay:
	@echo "fuzz-replay: no targets yet"
fuzz:
	@echo "fuzz: no targets yet"
