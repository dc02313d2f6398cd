; Folds of the .gw language: every `{ ... }` block (a declaration's body and the
; blocks inside it: health, eject, pool, tls, cors, aggregate, tests) and lists.

[
  (block)
  (list)
] @fold
