"""Access as code: Warden's declared state as one YAML file, exported and applied.

The file holds the role catalogue (with what each role becomes per environment and tier), the
approval policies, the standing grants, the clusters' metadata and the managed service accounts
(not their delivery targets, which hold webhook signing keys); it names things by name,
never by id, in a stable order, so that a change reads well in a git diff.

The package (a Django app for its `manage.py warden` command; `files` is the way in):
`format` (sections, keys, YAML with line numbers, the declared state), `state`
(what Warden holds now), `checks` (loading a file), `diff`, `plan` (per cluster) and `apply`.

`export()` writes what Warden holds; `load()` reads a file, checking every entry and naming the
file and line of each problem; `diff()` says what applying it would add, change and remove in
Warden (and `rbac_plan()` what that does on each cluster); `apply()` makes the changes in one
transaction through the same services as the pages and the API, so each change is audited and
the clusters it reaches reconcile after the commit.

What "removed from the file" means: by default nothing is taken away. Roles, definitions,
policies and standing grants that Warden has and the file lacks are listed and kept. With
`prune=True` the file is the whole truth for these: standing grants not in the file are
revoked, definitions of the file's roles and policies not in the file are deleted, service
accounts not in the file are retired (their tokens revoked). Roles
themselves are never deleted (grants and requests refer to them), and clusters are never
registered nor retired by a file: their credentials are not in it, and retiring is a fleet
operation with its own page.
"""
