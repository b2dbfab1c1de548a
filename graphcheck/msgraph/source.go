package msgraph

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	absauth "github.com/microsoft/kiota-abstractions-go/authentication"
	khttp "github.com/microsoft/kiota-http-go"
	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphgocore "github.com/microsoftgraph/msgraph-sdk-go-core"
	graphauth "github.com/microsoftgraph/msgraph-sdk-go-core/authentication"
	"github.com/microsoftgraph/msgraph-sdk-go/groups"
	"github.com/microsoftgraph/msgraph-sdk-go/identitygovernance"
	"github.com/microsoftgraph/msgraph-sdk-go/rolemanagement"
	"github.com/microsoftgraph/msgraph-sdk-go/serviceprincipals"
	"github.com/microsoftgraph/msgraph-sdk-go/users"
	"golang.org/x/time/rate"

	"github.com/pimguard/pimguard/cache"
	"github.com/pimguard/pimguard/graphcheck"
)

// Source is the Microsoft Graph-backed [graphcheck.Source]. It is safe for
// concurrent use. Create it with [New].
type Source struct {
	cfg     *settings
	tel     *telemetry
	adapter *msgraphsdk.GraphRequestAdapter
	client  *msgraphsdk.GraphServiceClient

	mu     sync.Mutex
	limits map[string]*rate.Limiter // riskyUsers requests, by lower-case tenant ID
	// pauses holds, by lower-case tenant ID, when the pause that Graph's
	// latest 429 Retry-After set for the tenant ends, on Config.Now (see
	// pause.go); entries are dropped once over.
	pauses map[string]time.Time

	// roles holds each tenant's map of role-assignable group ID to the
	// group's active role assignment instances, by lower-case tenant ID,
	// for GroupRolesTTL from the start of its fetch; concurrent misses
	// share one fetch.
	roles *cache.Cache[string, map[string][]graphcheck.RoleAssignment]
	// risks holds users' risks by Principal.Key until FetchedAt+RiskTTL.
	// A Lookup reads the key's generation before it reads the cache or
	// sends anything and stores with StoreIf: a risk read before a purge
	// is never stored after it (the rule cache.Cache applies to the
	// Guard's states).
	risks *cache.Store[string, graphcheck.Risk]
}

// groupRolesCacheSize bounds the tenants whose group-held roles are cached:
// a Source usually serves one tenant, a multi-tenant API a handful.
const groupRolesCacheSize = 64

var (
	_ graphcheck.Source = (*Source)(nil)
	_ graphcheck.Purger = (*Source)(nil)
)

// sdkInit guards the SDK's lazy global initialisation, which races
// otherwise: the error-mapping registry's singleton (msgraph-sdk-go-core
// #359: created unsynchronised on first use by PageIterator and the batch
// helpers) and the serializer registries that the first
// NewGraphServiceClient fills and wraps (later calls find them filled and
// write nothing, but their readers take no lock). Doing both inside one
// sync.Once makes every New return only after the writes are done.
var sdkInit sync.Once

// newMu serialises [New]: the SDK's constructors write package-level state.
var newMu sync.Mutex

// New validates cfg, applies its defaults and builds the Graph client. It
// makes no network call: the credential is first asked for a token by the
// first Lookup. It returns an error wrapping [ErrInvalidConfig] for a
// configuration it refuses.
func New(cfg Config) (*Source, error) {
	// The SDK's constructors write package-level state (kiota's backing
	// store factory), so concurrent calls to New would race: build one
	// client at a time. Lookups on built Sources are unaffected.
	newMu.Lock()
	defer newMu.Unlock()
	st, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	tel, err := newTelemetry(st.MeterProvider, st.TracerProvider)
	if err != nil {
		return nil, err
	}

	var auth absauth.AuthenticationProvider
	if st.InsecureNoCredential {
		auth = &absauth.AnonymousAuthenticationProvider{}
	} else {
		cred := st.Credential
		if cred == nil {
			if cred, err = azidentity.NewDefaultAzureCredential(nil); err != nil {
				return nil, fmt.Errorf("%w: DefaultAzureCredential: %v", ErrInvalidConfig, err)
			}
		}
		// The Graph provider attaches tokens only to its allowed hosts and
		// silently sends none elsewhere: allow exactly the configured host.
		auth, err = graphauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, []string{st.Scope}, []string{st.base.Hostname()})
		if err != nil {
			return nil, fmt.Errorf("%w: authentication provider: %v", ErrInvalidConfig, err)
		}
	}

	// The HTTP client keeps the SDK's default middleware (telemetry, URL
	// replacement, compression, parameter-name decoding, user agent,
	// headers inspection) but two:
	//   - the retry handler is told never to retry (a non-nil ShouldRetry,
	//     since a nil one panics; MaxRetries set, since 0 means 3), because
	//     retries are done in one place, fetch, for whole batches and for
	//     throttled sub-requests alike, with a fractional Retry-After, the
	//     caller's deadline and Config.Sleep. Kiota's handler would truncate
	//     "2.128" to 2s, wait on a real timer even when the deadline cannot
	//     be met, and never sees inside a $batch.
	//   - the redirect handler is removed, and the client refuses
	//     redirects too: Graph has no reason to redirect a $batch, and
	//     following one would send the request (the principal's IDs in its
	//     body) to whatever host the Location names. A 3xx is an unexpected
	//     answer, which fails the lookup (graphcheck.ErrUnavailable).
	opts := msgraphsdk.GetDefaultClientOptions()
	var middleware []khttp.Middleware
	for _, m := range msgraphgocore.GetDefaultMiddlewaresWithOptions(&opts) {
		switch m.(type) {
		case *khttp.RedirectHandler, khttp.RedirectHandler:
			continue
		case *khttp.RetryHandler, khttp.RetryHandler:
			m = khttp.NewRetryHandlerWithOptions(khttp.RetryHandlerOptions{
				MaxRetries:  1,
				ShouldRetry: func(time.Duration, int, *http.Request, *http.Response) bool { return false },
			})
		}
		middleware = append(middleware, m)
	}
	httpClient := msgraphgocore.GetDefaultClient(&opts, middleware...)
	if st.Transport != nil {
		httpClient.Transport = khttp.NewCustomTransportWithParentTransport(st.Transport, middleware...)
	}
	httpClient.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	adapter, err := msgraphsdk.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, httpClient)
	if err != nil {
		return nil, fmt.Errorf("%w: request adapter: %v", ErrInvalidConfig, err)
	}
	adapter.SetBaseUrl(st.baseStr)
	var client *msgraphsdk.GraphServiceClient
	sdkInit.Do(func() {
		_, _ = msgraphgocore.GetErrorFactoryFromRegistry(msgraphgocore.PageIteratorErrorRegistryKey)
		client = msgraphsdk.NewGraphServiceClient(adapter)
	})
	if client == nil {
		client = msgraphsdk.NewGraphServiceClient(adapter)
	}
	risks, err := cache.NewStore[string, graphcheck.Risk](st.RiskCacheSize)
	if err != nil {
		return nil, fmt.Errorf("%w: RiskCacheSize: %v", ErrInvalidConfig, err)
	}
	src := &Source{cfg: st, tel: tel, adapter: adapter, client: client, limits: map[string]*rate.Limiter{}, pauses: map[string]time.Time{}, risks: risks}
	src.roles, err = cache.New(cache.Config{Size: groupRolesCacheSize, TTL: st.GroupRolesTTL, LoadTimeout: st.Timeout, Now: st.Now},
		func(ctx context.Context, tenant string) (cache.Result[map[string][]graphcheck.RoleAssignment], error) {
			m, err := src.fetchGroupRoles(ctx, tenant)
			return cache.Result[map[string][]graphcheck.RoleAssignment]{Value: m}, err
		})
	if err != nil {
		return nil, fmt.Errorf("%w: group roles cache: %v", ErrInvalidConfig, err)
	}
	return src, nil
}

// Lookup fetches p's live PIM state. It validates p first (nothing is sent
// for an ID that is not a GUID), then reads, in one $batch round trip, the
// principal's directory-role assignment schedule instances, its
// PIM-for-Groups assignment schedule instances and its transitive group
// memberships, following @odata.nextLink (further pages of all three travel
// together, one round trip per page), and, when p.CheckGroups is not
// empty, which of its groups the principal is a live member of (POST
// checkMemberGroups, one sub-request per 20 groups, in the same $batch;
// [graphcheck.State.MemberOf]). Only when the principal belongs to a
// role-assignable group does it also need the tenant's group-held roles,
// which are fetched at most once per [Config.GroupRolesTTL] per tenant and
// shared by concurrent Lookups. [graphcheck.Combine] joins the answers.
//
// Lookup is bounded by ctx and [Config.Timeout]. Errors wrap
// [graphcheck.ErrInvalidPrincipal], [graphcheck.ErrPrincipalNotFound],
// [graphcheck.ErrPermissionDenied] or [graphcheck.ErrLicenseRequired] (as a
// [*graphcheck.PermissionError] naming the permission or licence), or
// [graphcheck.ErrUnavailable]; no failure yields a State.
func (s *Source) Lookup(ctx context.Context, p graphcheck.Principal) (*graphcheck.State, error) {
	return s.lookup(ctx, p, true)
}

// lookup is Lookup when pim is true. When pim is false it reads only what
// p's Need and CheckGroups ask for, and with CheckGroups the principal's
// PIM-for-Groups instances (which State.MemberOfGroup needs), leaving out
// its role instances, transitive groups and their roles: what a Snapshot
// still asks per principal.
func (s *Source) lookup(ctx context.Context, p graphcheck.Principal, pim bool) (_ *graphcheck.State, err error) {
	ctx, o := s.tel.start(ctx, spanLookup, lookupAttrs(p)...)
	defer func() { o.end(err) }()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(withPace(ctx), s.cfg.Timeout)
	defer cancel()
	oid, tenant := strings.ToLower(p.ObjectID), strings.ToLower(p.TenantID)

	f := graphcheck.Facts{Principal: p}
	var cols []*collection
	if pim {
		own, err := s.roleInstances(ctx, oid, true, func(r []graphcheck.RoleAssignment) { f.Own = append(f.Own, r...) })
		if err != nil {
			return nil, err
		}
		cols = append(cols, own)
	}
	if pim || p.CheckGroups.Len() > 0 {
		groups, err := s.groupInstances(ctx, oid, func(m []graphcheck.GroupMembership) { f.Memberships = append(f.Memberships, m...) })
		if err != nil {
			return nil, err
		}
		cols = append(cols, groups)
	}
	if pim {
		memberOf, err := s.memberOf(ctx, oid, p.ServicePrincipal, func(g []graphcheck.GroupRef) { f.Groups = append(f.Groups, g...) })
		if err != nil {
			return nil, err
		}
		cols = append(cols, memberOf)
	}
	if p.Need.Has(graphcheck.NeedAccount) {
		acc, err := s.account(ctx, oid, p.ServicePrincipal, func(a *graphcheck.Account) { f.Account = a })
		if err != nil {
			return nil, err
		}
		cols = append(cols, acc)
	}
	// Live membership of the groups asked about: checkMemberGroups, 20
	// groups a call, in the same $batch. fetch completes these
	// collections only through their add, so after it succeeds every
	// group asked has been answered for.
	var checked, member []string
	if p.CheckGroups.Len() > 0 {
		checked = p.CheckGroups.IDs()
		cg, err := s.checkMemberGroups(ctx, oid, p.ServicePrincipal, checked, func(m []string) { member = append(member, m...) })
		if err != nil {
			return nil, err
		}
		cols = append(cols, cg...)
	}
	// fetch completes a single-object collection only through its add or
	// absent callback, so after it succeeds f.Account and the risk are set
	// whenever they were asked for.
	var (
		fresh   *graphcheck.Risk // read by this Lookup, to be cached
		riskKey string
		riskGen uint64
	)
	if p.Need.Has(graphcheck.NeedRisk) && !p.ServicePrincipal {
		riskKey = graphcheck.Principal{TenantID: tenant, ObjectID: oid}.Key()
		riskGen = s.risks.Generation(riskKey) // before the cache is read and anything is sent
		if r, ok := s.cachedRisk(riskKey); ok {
			f.Risk = &r
		} else {
			risk, err := s.risk(ctx, oid, func(r graphcheck.Risk) { fresh = &r })
			if err != nil {
				return nil, err
			}
			if err := s.riskTurn(ctx, tenant); err != nil {
				return nil, err
			}
			cols = append(cols, risk)
		}
	}
	// FetchedAt is when the first request is sent, not when the last
	// answer arrived: retries after Retry-After waits may stretch the gap
	// up to Timeout, and an assignment Graph reported as active must be
	// judged at an instant when it was (see graphcheck.Facts.FetchedAt).
	// Earlier is the safe side: assignments that have ended since are
	// still decided at each request's own time, and the risk is kept for
	// RiskTTL from before Graph read it.
	f.FetchedAt = s.cfg.Now()
	if err := s.fetch(ctx, tenant, cols); err != nil {
		return nil, err
	}
	if fresh != nil {
		fresh.FetchedAt = f.FetchedAt
		s.storeRisk(riskKey, *fresh, riskGen)
		f.Risk = fresh
	}

	for _, g := range f.Groups {
		if g.IsAssignableToRole {
			if f.GroupRoles, err = s.groupRoles(ctx, tenant); err != nil {
				return nil, err
			}
			break
		}
	}
	st := graphcheck.Combine(f)
	memberOfState(st, checked, member)
	return st, nil
}

// groupRoles returns the tenant's role-assignable groups and their active
// role assignment instances, from the cache while it is younger than
// GroupRolesTTL, else from one fetch shared by every caller that needs it
// meanwhile. The fetch runs detached from any caller's context, bounded by
// Config.Timeout; each caller stops waiting when its own ctx is done. A
// fetch that a PurgeAll overtook still answers the callers that joined it
// but is not stored.
func (s *Source) groupRoles(ctx context.Context, tenant string) (map[string][]graphcheck.RoleAssignment, error) {
	m, _, err := s.roles.Get(ctx, tenant)
	if err != nil && err == ctx.Err() {
		return nil, classifyErr(epGroups, err) // this caller gave up; the fetch goes on
	}
	return m, err
}

// fetchGroupRoles lists the tenant's role-assignable groups, then reads
// each group's active role assignment instances, up to 20 groups per
// $batch.
func (s *Source) fetchGroupRoles(ctx context.Context, tenant string) (map[string][]graphcheck.RoleAssignment, error) {
	var ids []string
	list, err := s.assignableGroups(ctx, func(gid string) { ids = append(ids, gid) })
	if err != nil {
		return nil, err
	}
	if err := s.fetch(ctx, tenant, []*collection{list}); err != nil {
		return nil, err
	}

	byGroup := make(map[string][]graphcheck.RoleAssignment, len(ids))
	cols := make([]*collection, 0, len(ids))
	for _, gid := range ids {
		if _, dup := byGroup[gid]; dup {
			continue
		}
		byGroup[gid] = nil
		c, err := s.roleInstances(ctx, gid, false, func(r []graphcheck.RoleAssignment) { byGroup[gid] = append(byGroup[gid], r...) })
		if err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	if err := s.fetch(ctx, tenant, cols); err != nil {
		return nil, err
	}
	return byGroup, nil
}

// assignableGroups is the collection of the tenant's role-assignable
// groups, GET /groups?$filter=isAssignableToRole eq true: add receives
// each group's ID, lower case, checked to be a GUID.
func (s *Source) assignableGroups(ctx context.Context, add func(gid string)) (*collection, error) {
	filter := "isAssignableToRole eq true"
	top := int32(999)
	rel, err := s.relative(s.client.Groups().ToGetRequestInformation(ctx, &groups.GroupsRequestBuilderGetRequestConfiguration{
		QueryParameters: &groups.GroupsRequestBuilderGetQueryParameters{Filter: &filter, Select: []string{"id"}, Top: &top},
	}))
	if err != nil {
		return nil, unavailable("building GET /groups: %v", err)
	}
	return &collection{ep: epGroups, next: rel, add: func(v json.RawMessage) error {
		gs, err := decodeGroups(v)
		for _, g := range gs {
			if !graphcheck.IsGUID(g.ID) {
				return fmt.Errorf("%w: group id %.40q is not a GUID", errShape, g.ID)
			}
			add(g.ID)
		}
		return err
	}}, nil
}

// roleInstances is the collection of principalID's active directory-role
// assignment schedule instances. For a user or service principal (own),
// instances Graph reports as inherited from a group are left out: they are
// derived from the groups' own instances instead.
func (s *Source) roleInstances(ctx context.Context, principalID string, own bool, add func([]graphcheck.RoleAssignment)) (*collection, error) {
	filter := "principalId eq '" + principalID + "'" // a validated GUID
	return s.roleInstanceList(ctx, &rolemanagement.DirectoryRoleAssignmentScheduleInstancesRequestBuilderGetQueryParameters{Filter: &filter, Select: roleSelect},
		func(v json.RawMessage) error {
			r, err := decodeRoles(v, own)
			add(r)
			return err
		})
}

// roleInstanceList is the collection of the active directory-role
// assignment schedule instances that q selects, each page read by add.
func (s *Source) roleInstanceList(ctx context.Context, q *rolemanagement.DirectoryRoleAssignmentScheduleInstancesRequestBuilderGetQueryParameters, add func(json.RawMessage) error) (*collection, error) {
	rel, err := s.relative(s.client.RoleManagement().Directory().RoleAssignmentScheduleInstances().ToGetRequestInformation(ctx,
		&rolemanagement.DirectoryRoleAssignmentScheduleInstancesRequestBuilderGetRequestConfiguration{QueryParameters: q}))
	if err != nil {
		return nil, unavailable("building GET %s: %v", epRoles.path, err)
	}
	return &collection{ep: epRoles, next: rel, add: add}, nil
}

// groupInstances is the collection of principalID's active PIM-for-Groups
// assignment schedule instances (the API requires a principalId or groupId
// filter).
func (s *Source) groupInstances(ctx context.Context, principalID string, add func([]graphcheck.GroupMembership)) (*collection, error) {
	filter := "principalId eq '" + principalID + "'" // a validated GUID
	return s.groupInstanceList(ctx, filter, groupSelect, func(v json.RawMessage) error {
		m, err := decodeMemberships(v)
		add(m)
		return err
	})
}

// groupInstanceList is the collection of the active PIM-for-Groups
// assignment schedule instances that filter selects (a principalId or a
// groupId: the API requires one), with the properties sel, each page read
// by add.
func (s *Source) groupInstanceList(ctx context.Context, filter string, sel []string, add func(json.RawMessage) error) (*collection, error) {
	rel, err := s.relative(s.client.IdentityGovernance().PrivilegedAccess().Group().AssignmentScheduleInstances().ToGetRequestInformation(ctx,
		&identitygovernance.PrivilegedAccessGroupAssignmentScheduleInstancesRequestBuilderGetRequestConfiguration{
			QueryParameters: &identitygovernance.PrivilegedAccessGroupAssignmentScheduleInstancesRequestBuilderGetQueryParameters{Filter: &filter, Select: sel},
		}))
	if err != nil {
		return nil, unavailable("building GET %s: %v", epGroupPIM.path, err)
	}
	return &collection{ep: epGroupPIM, next: rel, add: add}, nil
}

// memberOf is the collection of the groups oid belongs to, directly or
// transitively, with their isAssignableToRole.
func (s *Source) memberOf(ctx context.Context, oid string, servicePrincipal bool, add func([]graphcheck.GroupRef)) (*collection, error) {
	top := int32(999)
	var (
		ri  *abstractions.RequestInformation
		err error
		ep  = epUserGroups
	)
	if servicePrincipal {
		ep = epSPGroups
		ri, err = s.client.ServicePrincipals().ByServicePrincipalId(oid).TransitiveMemberOf().GraphGroup().ToGetRequestInformation(ctx,
			&serviceprincipals.ItemTransitiveMemberOfGraphGroupRequestBuilderGetRequestConfiguration{
				QueryParameters: &serviceprincipals.ItemTransitiveMemberOfGraphGroupRequestBuilderGetQueryParameters{Select: memberOfSelect, Top: &top},
			})
	} else {
		ri, err = s.client.Users().ByUserId(oid).TransitiveMemberOf().GraphGroup().ToGetRequestInformation(ctx,
			&users.ItemTransitiveMemberOfGraphGroupRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.ItemTransitiveMemberOfGraphGroupRequestBuilderGetQueryParameters{Select: memberOfSelect, Top: &top},
			})
	}
	rel, err := s.relative(ri, err)
	if err != nil {
		return nil, unavailable("building GET %s: %v", ep.path, err)
	}
	return &collection{ep: ep, next: rel, add: func(v json.RawMessage) error {
		g, err := decodeGroups(v)
		add(g)
		return err
	}}, nil
}
