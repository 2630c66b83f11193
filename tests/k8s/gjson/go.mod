module kafka-lag-lab/tests/k8s/gjson

go 1.23

// The release kedacore/keda's go.mod requires (v2.x main, 2026): the path syntax KEDA evaluates.
require github.com/tidwall/gjson v1.19.0

require (
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.0 // indirect
)
