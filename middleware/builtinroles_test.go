package middleware

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pimguard/pimguard/graphcheck"
)

// builtInRoleCount is the number of rows in the "All roles" table of the
// source named on builtInRoles (entra-docs 00fe95d, ms.date 01/20/2026).
const builtInRoleCount = 123

func TestBuiltInRolesTable(t *testing.T) {
	if got := len(builtInRoles); got != builtInRoleCount {
		t.Errorf("table has %d roles, the source lists %d", got, builtInRoleCount)
	}
	names := make(map[string]int)
	ids := make(map[string]int)
	for i, r := range builtInRoles {
		if !graphcheck.IsGUID(r.id) {
			t.Errorf("row %d %q: template ID %q is not a GUID", i, r.name, r.id)
		}
		if r.id != strings.ToLower(r.id) {
			t.Errorf("row %d %q: template ID %q is not lower case as in the source", i, r.name, r.id)
		}
		if norm := strings.Join(strings.Fields(r.name), " "); r.name != norm || norm == "" {
			t.Errorf("row %d: name %q is not in the form BuiltInRoleID matches (%q)", i, r.name, norm)
		}
		if j, dup := names[strings.ToLower(r.name)]; dup {
			t.Errorf("rows %d and %d: name %q twice", j, i, r.name)
		}
		names[strings.ToLower(r.name)] = i
		if j, dup := ids[strings.ToLower(r.id)]; dup {
			t.Errorf("rows %d and %d: template ID %q twice", j, i, r.id)
		}
		ids[strings.ToLower(r.id)] = i
		if i > 0 && strings.ToLower(builtInRoles[i-1].name) >= strings.ToLower(r.name) {
			t.Errorf("row %d %q is not after %q (the table is sorted by name, ignoring case)", i, r.name, builtInRoles[i-1].name)
		}
	}
}

// TestBuiltInRoleRoundTrip looks every row up both ways, so a row shadowed by
// an earlier one (a duplicate in another case) or mangled by normalisation
// fails here.
func TestBuiltInRoleRoundTrip(t *testing.T) {
	for _, r := range builtInRoles {
		if id, ok := BuiltInRoleID(strings.ToUpper(r.name)); !ok || id != r.id {
			t.Errorf("BuiltInRoleID(%q) = %q, %v; want %q, true", strings.ToUpper(r.name), id, ok, r.id)
		}
		if name, ok := BuiltInRoleName(strings.ToUpper(r.id)); !ok || name != r.name {
			t.Errorf("BuiltInRoleName(%q) = %q, %v; want %q, true", strings.ToUpper(r.id), name, ok, r.name)
		}
	}
}

// TestBuiltInRoleConstants checks the constants in roles.go against the table:
// each must be the template ID of the role its doc comment names.
func TestBuiltInRoleConstants(t *testing.T) {
	tests := []struct {
		constant, name string
	}{
		{RoleGlobalAdministrator, "Global Administrator"},
		{RolePrivilegedRoleAdministrator, "Privileged Role Administrator"},
		{RolePrivilegedAuthenticationAdministrator, "Privileged Authentication Administrator"},
		{RoleUserAdministrator, "User Administrator"},
		{RoleHelpdeskAdministrator, "Helpdesk Administrator"},
		{RoleAuthenticationAdministrator, "Authentication Administrator"},
		{RoleSecurityAdministrator, "Security Administrator"},
		{RoleSecurityReader, "Security Reader"},
		{RoleGlobalReader, "Global Reader"},
		{RoleGroupsAdministrator, "Groups Administrator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if id, ok := BuiltInRoleID(tt.name); !ok || id != tt.constant {
				t.Errorf("BuiltInRoleID(%q) = %q, %v; the constant is %q", tt.name, id, ok, tt.constant)
			}
			if name, ok := BuiltInRoleName(tt.constant); !ok || name != tt.name {
				t.Errorf("BuiltInRoleName(%q) = %q, %v; want %q", tt.constant, name, ok, tt.name)
			}
		})
	}
}

func TestBuiltInRoleID(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		wantID string
		wantOK bool
	}{
		{"exact", "Helpdesk Administrator", RoleHelpdeskAdministrator, true},
		{"lower case", "helpdesk administrator", RoleHelpdeskAdministrator, true},
		{"upper case", "HELPDESK ADMINISTRATOR", RoleHelpdeskAdministrator, true},
		{"surrounding spaces", "  Global Reader\n", RoleGlobalReader, true},
		{"inner whitespace run", "Privileged \t Role  Administrator", RolePrivilegedRoleAdministrator, true},
		{"digits and short words", "partner tier2 support", "e00e864a-17c5-4a4b-9c06-f5b95a8d5bd8", true},
		{"abbreviated", "Helpdesk Admin", "", false},
		{"space removed", "HelpdeskAdministrator", "", false},
		{"azure RBAC role", "Contributor", "", false},
		{"deprecated role", "Device Managers", "", false},
		{"template ID", RoleGlobalAdministrator, "", false},
		{"empty", "", "", false},
		{"spaces only", "   ", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok := BuiltInRoleID(tt.in)
			if id != tt.wantID || ok != tt.wantOK {
				t.Errorf("BuiltInRoleID(%q) = %q, %v; want %q, %v", tt.in, id, ok, tt.wantID, tt.wantOK)
			}
		})
	}
}

func TestBuiltInRoleName(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantName string
		wantOK   bool
	}{
		{"lower case", "729827e3-9c14-49f7-bb1b-9608f156bbb8", "Helpdesk Administrator", true},
		{"upper case", "729827E3-9C14-49F7-BB1B-9608F156BBB8", "Helpdesk Administrator", true},
		{"surrounding spaces", " 62e90394-69f5-4237-9190-012177145e10 ", "Global Administrator", true},
		{"custom role", "00000000-0000-0000-0000-000000000001", "", false},
		{"braced GUID", "{62e90394-69f5-4237-9190-012177145e10}", "", false},
		{"name", "Global Administrator", "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, ok := BuiltInRoleName(tt.in)
			if name != tt.wantName || ok != tt.wantOK {
				t.Errorf("BuiltInRoleName(%q) = %q, %v; want %q, %v", tt.in, name, ok, tt.wantName, tt.wantOK)
			}
		})
	}
}

func TestSuggestBuiltInRole(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		// Abbreviations: the only name that starts with the input.
		{"Helpdesk Admin", "Helpdesk Administrator"},
		{"global admin", "Global Administrator"},
		{"Authentication Admin", "Authentication Administrator"}, // not Privileged Authentication Administrator
		{"Exchange Admin", "Exchange Administrator"},
		// The only name that contains the input.
		{"Role Administrator", "Privileged Role Administrator"}, // not Edge Administrator, 3 edits away
		{"Rol Administrator", ""},
		// Typos: a small edit distance.
		{"Helpdesk Administator", "Helpdesk Administrator"},
		{"Help desk Administrator", "Helpdesk Administrator"},
		{"Gobal Reader", "Global Reader"},
		{"Directory Reader", "Directory Readers"},
		{"Security Admnistrator", "Security Administrator"},
		{"Tems Reder", "Teams Reader"},
		// A name BuiltInRoleID accepts comes back in its canonical spelling.
		{"  SECURITY   reader ", "Security Reader"},
		// Nothing close, or too many: no suggestion.
		{"Security", ""},      // starts three names
		{"Administrator", ""}, // in most names
		{"Admin", ""},
		{"Contributor", ""},    // an Azure RBAC role
		{"Billing Reader", ""}, // an Azure RBAC role, too
		{"ab", ""},
		{"", ""},
		{"   ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := SuggestBuiltInRole(tt.in); got != tt.want {
				t.Errorf("SuggestBuiltInRole(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestBuiltInRoleEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"kitten", "sitting", 3},
		{"flaw", "lawn", 2},
		{"reader", "readers", 1},
		{"größe", "grösse", 2}, // counted in runes, not bytes
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := editDistance(tt.b, tt.a); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.b, tt.a, got, tt.want)
		}
	}
}

func ExampleSuggestBuiltInRole() {
	for _, name := range []string{"Helpdesk Administrator", "Helpdesk Admin", "Contributor"} {
		if id, ok := BuiltInRoleID(name); ok {
			fmt.Printf("%q is %s\n", name, id)
		} else if s := SuggestBuiltInRole(name); s != "" {
			fmt.Printf("unknown role %q (did you mean %q?)\n", name, s)
		} else {
			fmt.Printf("unknown role %q (custom roles are configured by template ID)\n", name)
		}
	}
	// Output:
	// "Helpdesk Administrator" is 729827e3-9c14-49f7-bb1b-9608f156bbb8
	// unknown role "Helpdesk Admin" (did you mean "Helpdesk Administrator"?)
	// unknown role "Contributor" (custom roles are configured by template ID)
}
