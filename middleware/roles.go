package middleware

// Template IDs of common built-in Microsoft Entra roles, for [Role] and
// [RoleInScope]. A built-in role's definition ID equals its template ID in
// every tenant, and the same ID appears in the wids claim, so these values
// work both against live PIM state and, under [PolicyTokenAndLive], against
// the token. Source: Microsoft Entra built-in roles (permissions reference).
const (
	// RoleGlobalAdministrator is Global Administrator.
	RoleGlobalAdministrator = "62e90394-69f5-4237-9190-012177145e10"
	// RolePrivilegedRoleAdministrator is Privileged Role Administrator.
	RolePrivilegedRoleAdministrator = "e8611ab8-c189-46e8-94e1-60213ab1f814"
	// RolePrivilegedAuthenticationAdministrator is Privileged Authentication Administrator.
	RolePrivilegedAuthenticationAdministrator = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13"
	// RoleUserAdministrator is User Administrator.
	RoleUserAdministrator = "fe930be7-5e62-47db-91af-98c3a49a38b1"
	// RoleHelpdeskAdministrator is Helpdesk Administrator.
	RoleHelpdeskAdministrator = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
	// RoleAuthenticationAdministrator is Authentication Administrator.
	RoleAuthenticationAdministrator = "c4e39bd9-1100-46d3-8c65-fb160da0071f"
	// RoleSecurityAdministrator is Security Administrator.
	RoleSecurityAdministrator = "194ae4cb-b126-40b2-bd5b-6091b380977d"
	// RoleSecurityReader is Security Reader.
	RoleSecurityReader = "5d6b6bb7-de71-4623-b4af-96380a352509"
	// RoleGlobalReader is Global Reader.
	RoleGlobalReader = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
	// RoleGroupsAdministrator is Groups Administrator.
	RoleGroupsAdministrator = "fdd7a751-b60b-444a-984c-02652fe8fa1c"
)
