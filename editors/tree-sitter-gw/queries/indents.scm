; Indentation of the .gw language (Neovim's capture names): one level inside
; every `{ ... }` block and `[ ... ]` list; the closing bracket goes back.

[
  (block)
  (list)
] @indent.begin

(block "}" @indent.branch @indent.end)
(list "]" @indent.branch @indent.end)

(comment) @indent.auto
