; Definitions and references of the .gw language (Neovim's capture names).
;
; Upstreams, auths, limits and stores share one namespace over the whole
; configuration (imports included), so a file is the scope of its names. A
; route is the scope of its path's parameters (read as `param.NAME`).

(source_file) @local.scope
(route) @local.scope

(upstream name: (identifier) @local.definition.type)
(auth name: (identifier) @local.definition.type)
(limit name: (identifier) @local.definition.type)
(store name: (identifier) @local.definition.type)

(path_param name: (identifier) @local.definition.parameter)
(catch_all name: (identifier) @local.definition.parameter)
(part name: (identifier) @local.definition.field)

(route upstream: (identifier) @local.reference)
(tcp upstream: (identifier) @local.reference)
(route_auth name: (identifier) @local.reference)
(route_limit name: (identifier) @local.reference)
(part upstream: (identifier) @local.reference)
(expectation expected: (identifier) @local.reference)
(setting
  name: "store"
  value: (identifier) @local.reference)
