// Evaluates a GJSON path the way KEDA's metrics-api scaler does (pkg/scalers/metrics_api_scaler.go,
// getValueFromJSONResponse): gjson.GetBytes on the body, then a number is the metric, and anything
// else is an error. Reads the body on stdin, takes the path as its argument, prints
// {"type": <gjson type>, "value": <number or null>}. Used by tests/k8s/test_keda.py with the gjson
// release KEDA's go.mod pins.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/tidwall/gjson"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gjson PATH < body.json")
		os.Exit(2)
	}
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	r := gjson.GetBytes(body, os.Args[1])
	out := map[string]any{"type": r.Type.String(), "value": nil}
	if r.Type == gjson.Number {
		out["value"] = r.Num
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
