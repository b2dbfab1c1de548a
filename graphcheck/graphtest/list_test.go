package graphtest_test

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

func TestListDirectoryObjects(t *testing.T) {
	f := newFixture(t, graphtest.Options{})
	must(t, f.srv.SetAccountEnabled(bob, false))
	q := func(filter string) string { return "$filter=" + url.QueryEscape(filter) }
	tests := []struct {
		name, path string
		wantIDs    []string
		wantKeys   []string // of each item; nil: don't check
		context    string
	}{
		{"users", "/users", []string{alice, bob, carol},
			[]string{"id", "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
				"officeLocation", "preferredLanguage", "surname", "userPrincipalName"}, "users"},
		{"users $select", "/users?$select=id,accountEnabled,signInSessionsValidFromDateTime", []string{alice, bob, carol},
			[]string{"id", "accountEnabled", "signInSessionsValidFromDateTime"}, "users(id,accountEnabled,signInSessionsValidFromDateTime)"},
		{"users id eq", "/users?" + q("id eq '"+carol+"'"), []string{carol}, nil, "users"},
		{"users id in", "/users?" + q("id in ('"+carol+"', '"+alice+"', '"+daemon+"')") + "&$select=id", []string{alice, carol}, []string{"id"}, "users(id)"},
		{"users accountEnabled", "/users?" + q("accountEnabled eq false"), []string{bob}, nil, "users"},
		{"users id and accountEnabled", "/users?" + q("id in ('"+alice+"','"+bob+"') and accountEnabled eq true"), []string{alice}, nil, "users"},
		{"users id of a service principal", "/users?" + q("id eq '"+daemon+"'"), []string{}, nil, "users"},
		{"groups", "/groups?$select=id,isAssignableToRole", []string{admins, staff, everyone}, []string{"id", "isAssignableToRole"},
			"groups(id,isAssignableToRole)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items := f.with(t).list(tt.path, tt.wantIDs, tt.context)
			for _, it := range items {
				if tt.wantKeys != nil && len(it) != len(tt.wantKeys) {
					t.Errorf("item %v, want keys %v", it, tt.wantKeys)
				}
				for _, k := range tt.wantKeys {
					if _, ok := it[k]; !ok {
						t.Errorf("item %v lacks %s", it, k)
					}
				}
			}
		})
	}

	// An item is what the single-object GET returns, with the same query.
	for _, c := range []struct{ collection, query string }{
		{"/users", ""},
		{"/users", "?$select=id,accountEnabled,lastPasswordChangeDateTime"},
	} {
		for _, it := range f.getOK(c.collection + c.query).values(t) {
			one := c.collection + "/" + it["id"].(string) + c.query
			b := f.getOK(one).body
			delete(b, "@odata.context")
			if !reflect.DeepEqual(b, it) {
				t.Errorf("%s%s item %v, but %s is %v", c.collection, c.query, it, one, b)
			}
		}
	}

	errs := []struct{ name, path string }{
		{"not a GUID", "/users?" + q("id eq 'alice'")},
		{"unsupported property", "/users?" + q("userPrincipalName eq 'alice@contoso.test'")},
		{"or", "/users?" + q("id eq '"+alice+"' or accountEnabled eq true")},
		{"$top too large", "/users?$top=1000"},
		{"unknown $select", "/servicePrincipals/" + daemon + "?$select=id,signInAudience"},
		{"$orderby", "/users?$orderby=displayName"},
	}
	for _, tt := range errs {
		if r := f.get(tt.path); r.status != http.StatusBadRequest || r.errorCode() != "Request_BadRequest" {
			t.Errorf("%s: %d %s", tt.name, r.status, r.raw)
		}
	}
	if r := f.do(http.MethodPost, "/users", map[string]any{"displayName": "x"}); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /users: %d %s", r.status, r.raw)
	}

	// Paging follows the other collections: $top and the page size.
	items, pages := f.follow("/users?$top=1&$select=id")
	if got := ids(items, "id"); !equal(got, []string{alice, bob, carol}) || len(pages) != 3 {
		t.Fatalf("$top=1: %v over %d pages", got, len(pages))
	}
	f.srv.SetGraphPageSize(2)
	items, pages = f.follow("/users?" + q("accountEnabled eq true"))
	if got := ids(items, "id"); !equal(got, []string{alice, carol}) || len(pages) != 1 {
		t.Fatalf("filtered page: %v over %d pages", got, len(pages))
	}
	items, pages = f.follow("/users")
	if got := ids(items, "id"); !equal(got, []string{alice, bob, carol}) || len(pages) != 2 {
		t.Fatalf("page size 2: %v over %d pages", got, len(pages))
	}
}
