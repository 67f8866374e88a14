"""The PyTorch backend: building models from generated source (`backend`), the renderer
(`render`), one emitter per op (`ops`, `recurrent`, `sequence`), the module read-backs
(`reads`) and the helper source generated files carry (`helpers`, `init_helpers`,
`recurrent_helpers`, `sequence_helpers`)."""
