; Indentation of the .gw language with Helix's captures: one level inside
; every `{ ... }` block and `[ ... ]` list; the closing bracket goes back.

[
  (block)
  (list)
] @indent

(block "}" @outdent)
(list "]" @outdent)
