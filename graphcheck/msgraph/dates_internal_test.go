package msgraph

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// A date Graph would never send for a real assignment or account must not
// decide anything: "0001-01-01T00:00:00Z" parses to Go's zero time, which
// reads as "permanent" for an endDateTime (a forged answer would grant a
// role for ever) and as "no value" for the account dates. Every decoder
// that reads a date refuses it, like any date before 1970, and an end
// before the start.
func TestDecodersRefuseImpossibleDates(t *testing.T) {
	const role = `{"value":[{"roleDefinitionId":"62e90394-69f5-4237-9190-012177145e10","directoryScopeId":"/","assignmentType":"Assigned","memberType":"Direct","startDateTime":%s,"endDateTime":%s}]}`
	const membership = `{"value":[{"groupId":"ad315000-0000-4000-8000-00000000000a","accessId":"member","assignmentType":"Assigned","startDateTime":%s,"endDateTime":%s}]}`
	const account = `{"id":"` + fzOID + `","accountEnabled":true,"signInSessionsValidFromDateTime":%s,"lastPasswordChangeDateTime":%s}`
	decoders := []struct {
		name   string
		format string
		decode func(body []byte) (decoded bool, err error)
	}{
		{"roles", role, decodesRoles(true)},
		{"group-held roles", role, decodesRoles(false)},
		{"PIM for Groups", membership, func(b []byte) (bool, error) {
			v, _, err := decodePage(b)
			if err != nil {
				return false, err
			}
			m, err := decodeMemberships(v)
			return len(m) > 0, err
		}},
		{"account", account, func(b []byte) (bool, error) {
			a, err := decodeAccount(b, fzOID, true)
			return a != nil, err
		}},
	}
	for _, tc := range []struct {
		name       string
		start, end string
		refused    bool
	}{
		{"year 1", `null`, `"0001-01-01T00:00:00Z"`, true},
		{"year 1 with .NET's seven digits", `null`, `"0001-01-01T00:00:00.0000000Z"`, true},
		{"year 1 with an offset", `null`, `"0001-01-01T00:00:00+00:00"`, true},
		{"another year-1 date", `null`, `"0001-06-15T12:00:00Z"`, true},
		{"before 1970", `null`, `"1969-12-31T23:59:59Z"`, true},
		{"start in year 1", `"0001-01-01T00:00:00Z"`, `"2025-03-01T10:00:00Z"`, true},
		{"end before start", `"2025-03-01T10:00:00Z"`, `"2025-03-01T09:00:00Z"`, true},
		{"null end, null start", `null`, `null`, false},
		{"a real window", `"2025-03-01T08:00:00Z"`, `"2025-03-01T10:00:00.123Z"`, false},
		{"the epoch itself", `null`, `"1970-01-01T00:00:00Z"`, false},
	} {
		for _, d := range decoders {
			if d.name == "account" && tc.name == "end before start" {
				continue // two unrelated dates
			}
			t.Run(tc.name+"/"+d.name, func(t *testing.T) {
				body := []byte(fmt.Sprintf(d.format, tc.start, tc.end))
				decoded, err := d.decode(body)
				switch {
				case tc.refused && (err == nil || !errors.Is(err, errShape) || decoded):
					t.Errorf("decoded %s: %v, %v; want an unreadable answer", body, decoded, err)
				case !tc.refused && (err != nil || !decoded):
					t.Errorf("decoded %s: %v, %v; want it read", body, decoded, err)
				}
			})
		}
	}
}

// parseTime turns null into the zero time and everything else into a UTC
// instant no earlier than 1970.
func TestParseTime(t *testing.T) {
	s := func(v string) *string { return &v }
	if got, err := parseTime(nil); err != nil || !got.IsZero() {
		t.Errorf("null: %v, %v", got, err)
	}
	got, err := parseTime(s("2025-03-01T10:00:00+02:00"))
	if err != nil || !got.Equal(time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)) || got.Location() != time.UTC {
		t.Errorf("offset: %v, %v", got, err)
	}
	for _, v := range []string{"0001-01-01T00:00:00Z", "1969-07-20T20:17:00Z", "-0001-01-01T00:00:00Z", "tomorrow", ""} {
		if got, err := parseTime(s(v)); err == nil || !got.IsZero() {
			t.Errorf("%q: %v, %v; want an error", v, got, err)
		}
	}
}

// decodesRoles decodes a page of role instances as the principal's own
// (skipInherited) or as a group's.
func decodesRoles(skipInherited bool) func(body []byte) (bool, error) {
	return func(b []byte) (bool, error) {
		v, _, err := decodePage(b)
		if err != nil {
			return false, err
		}
		r, err := decodeRoles(v, skipInherited)
		return len(r) > 0, err
	}
}
