"""The Keras backend: the renderer (`backend`), one emitter per op (`ops`, `recurrent`,
`sequence`) and the helper source generated files carry (`helpers`, `sequence_helpers`)."""
