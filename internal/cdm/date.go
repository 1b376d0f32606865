package cdm

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Calendar arithmetic lives here, with the date type, once: parsing,
// civil dates, ages, and the week, month and year buckets that queries
// group by (queries/plan labels them, queries/eval and the warehouse
// dialect compute them).

// Date is a calendar day counted from 1970-01-01 (UTC). NoDate marks a
// missing date.
type Date int32

// NoDate is the missing date.
const NoDate Date = math.MinInt32

var epoch = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)

// DateOf returns the calendar day of t in UTC.
func DateOf(t time.Time) Date {
	y, m, d := t.UTC().Date()
	return Date(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Sub(epoch).Hours() / 24)
}

// DateFromYMD returns the day y-m-d. It does not validate; use ParseDate for
// untrusted input.
func DateFromYMD(y int, m time.Month, d int) Date {
	return DateOf(time.Date(y, m, d, 0, 0, 0, 0, time.UTC))
}

// ErrBadDate is returned by ParseDate for text that is not a real date.
var ErrBadDate = errors.New("cdm: bad date")

// ParseDate parses YYYY-MM-DD, a FHIR dateTime/instant (YYYY-MM-DDThh:mm:ss...,
// whose day is taken as written), and the partial FHIR forms YYYY-MM and YYYY
// (taken as the first day). The empty string is NoDate with no error.
// Impossible dates such as 2021-02-30 are errors.
func ParseDate(s string) (Date, error) {
	if s == "" {
		return NoDate, nil
	}
	day := s
	if i := strings.IndexByte(s, 'T'); i >= 0 {
		day = s[:i]
	}
	var y, m, d int
	var ok bool
	switch len(day) {
	case 10:
		y, ok = atoi(day[0:4])
		mm, ok2 := atoi(day[5:7])
		dd, ok3 := atoi(day[8:10])
		ok = ok && ok2 && ok3 && day[4] == '-' && day[7] == '-'
		m, d = mm, dd
	case 7:
		y, ok = atoi(day[0:4])
		mm, ok2 := atoi(day[5:7])
		ok = ok && ok2 && day[4] == '-'
		m, d = mm, 1
	case 4:
		y, ok = atoi(day)
		m, d = 1, 1
	}
	if !ok || m < 1 || m > 12 || d < 1 || d > 31 || y < 1800 || y > 2200 {
		return NoDate, fmt.Errorf("%w %q: want YYYY-MM-DD", ErrBadDate, s)
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Day() != d {
		return NoDate, fmt.Errorf("%w %q: no such day", ErrBadDate, s)
	}
	return DateOf(t), nil
}

func atoi(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// Valid reports whether d is a date (not NoDate).
func (d Date) Valid() bool { return d != NoDate }

// Time returns midnight UTC of d.
func (d Date) Time() time.Time { return epoch.AddDate(0, 0, int(d)) }

// String formats d as YYYY-MM-DD, or "" for NoDate.
func (d Date) String() string {
	if d == NoDate {
		return ""
	}
	return d.Time().Format("2006-01-02")
}

// AgeAt returns the age in whole years of someone born on birth at day at.
// It returns -1 when either date is missing or at precedes birth.
func AgeAt(birth, at Date) int {
	if birth == NoDate || at == NoDate || at < birth {
		return -1
	}
	by, bm, bd := birth.Civil()
	ay, am, ad := at.Civil()
	age := ay - by
	if am < bm || (am == bm && ad < bd) {
		age--
	}
	return age
}

// Civil returns the year, month (1-12) and day of d in the proleptic
// Gregorian calendar, by arithmetic alone (Howard Hinnant's
// civil_from_days), without time.Time: loaders and evaluators call it per
// row. d must be a date (not NoDate).
func (d Date) Civil() (y, m, day int) {
	z := int(d) + 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, day
}

// Week returns the week bucket of d: whole weeks since Monday 1969-12-29,
// so that every bucket runs Monday to Sunday (ISO weeks). WeekStart is its
// inverse.
func (d Date) Week() int { return floorDiv(int(d)+3, 7) }

// WeekStart returns the Monday that starts week bucket i (Date.Week).
func WeekStart(i int) Date { return Date(i*7 - 3) }

// Month returns the month bucket of d: year*12 + month - 1. MonthStart is
// its inverse.
func (d Date) Month() int {
	y, m, _ := d.Civil()
	return y*12 + m - 1
}

// MonthStart returns the first day of month bucket i (Date.Month).
func MonthStart(i int) Date {
	return DateFromYMD(floorDiv(i, 12), time.Month(i-floorDiv(i, 12)*12+1), 1)
}

// Year returns the calendar year of d.
func (d Date) Year() int {
	y, _, _ := d.Civil()
	return y
}

// floorDiv is a / b rounded towards negative infinity.
func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
