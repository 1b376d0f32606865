package stats

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadPopulations(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pop.csv")
	os.WriteFile(p, []byte("region,fips,name,population\nCA,06,California,39000000\nNY,36,New York,19500000\n"), 0o600)
	pops, err := ReadPopulations(p)
	if err != nil || pops["CA"] != 39e6 || len(pops) != 2 {
		t.Fatalf("%v %v", pops, err)
	}
	os.WriteFile(p, []byte("region,population\nCA,many\n"), 0o600)
	if _, err := ReadPopulations(p); err == nil {
		t.Error("a bad population was accepted")
	}
}
