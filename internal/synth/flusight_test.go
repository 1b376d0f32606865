package synth

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/test/testkit"

	"github.com/fedstat/fedstat/internal/cdm"
)

func fluPaths(t *testing.T) (string, string) {
	return testkit.SharedData(t, "flusight/target-hospital-admissions.csv"), testkit.SharedData(t, "flusight/locations.csv")
}

func TestFluSightWeekSumsToNational(t *testing.T) {
	csvPath, locPath := fluPaths(t)
	week := cdm.DateFromYMD(2025, time.February, 8)
	// Convert a month around the week, so neighbouring weeks must stay out.
	byState, err := FluSight(csvPath, locPath, FluOptions{Seed: 1, From: week - 14, To: week + 14})
	if err != nil {
		t.Fatal(err)
	}
	if len(byState) != 52 {
		t.Errorf("%d locations, want 52 (50 states, DC, PR)", len(byState))
	}
	if _, ok := byState["US"]; ok {
		t.Fatal("the national total was converted")
	}
	total := 0
	for code, r := range byState {
		if len(r.Patients) != len(r.Conditions) {
			t.Fatalf("%s: %d patients, %d conditions", code, len(r.Patients), len(r.Conditions))
		}
		for i, c := range r.Conditions {
			p := r.Patients[i]
			if c.PatientID != p.ID || p.Region != code || c.Code != CodeInfluenza || c.System != cdm.SystemSNOMED ||
				!strings.HasPrefix(p.ID, "flu-"+code+"-") || weekEnding(c.Onset) < week-14 || weekEnding(c.Onset) > week+14 {
				t.Fatalf("%s: bad record %+v %+v", code, p, c)
			}
			if age := cdm.AgeAt(p.BirthDate, c.Onset); age < 0 || age > 100 {
				t.Fatalf("age %d", age)
			}
			if weekEnding(c.Onset) == week {
				total++
			}
		}
	}
	if total != 55757 {
		t.Fatalf("week ending 2025-02-08: %d condition rows, want 55,757", total)
	}
	// California alone, by FIPS, is the same as in the full run.
	ca, err := FluSight(csvPath, locPath, FluOptions{Seed: 1, From: week - 14, To: week + 14, Locations: []string{"06"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ca) != 1 || !reflect.DeepEqual(ca["CA"], byState["CA"]) {
		t.Fatal("converting one state differs from converting all")
	}
}

func TestFluLocations(t *testing.T) {
	_, locPath := fluPaths(t)
	pops, err := FluPopulations(locPath)
	if err != nil {
		t.Fatal(err)
	}
	if pops["CA"] != 39431263 || pops["US"] != 340110988 || len(pops) != 53 {
		t.Fatalf("populations: CA %d, US %d, %d locations", pops["CA"], pops["US"], len(pops))
	}
}

func TestFluSightBadInput(t *testing.T) {
	_, locPath := fluPaths(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "a.csv")
	os.WriteFile(bad, []byte("date,location,location_name,value,weekly_rate\n2025-02-08,\"06\",California,12,1\n2025-02-08,\"06\",California,-3,1\n"), 0o600)
	_, err := FluSight(bad, locPath, FluOptions{})
	if !errors.Is(err, ErrBadFluSight) || !strings.Contains(err.Error(), "a.csv:3") {
		t.Fatalf("got %v, want ErrBadFluSight at a.csv:3", err)
	}
	if weekEnding(cdm.DateFromYMD(2025, 2, 3)) != cdm.DateFromYMD(2025, 2, 8) {
		t.Fatal("weekEnding")
	}
}
