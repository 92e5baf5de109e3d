module fedgate.local/loadgen

go 1.26.0
