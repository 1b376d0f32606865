package coordinator_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/fedstat/fedstat/coordinator"
)

// testTokens writes a tokens file in which each name has the role given
// and the token "tok-<name>", and loads it.
func testTokens(t testing.TB, roles map[string]string) *coordinator.Tokens {
	t.Helper()
	var entries []map[string]string
	for name, role := range roles {
		entries = append(entries, map[string]string{"name": name, "role": role, "sha256": coordinator.HashToken("tok-" + name)})
	}
	b, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := coordinator.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}
