"""The proof tools: `archc verify` (`verify`, `conform`), `verify --train` (`train_check`),
weight transfer between the frameworks (`transfer`) and `archc weights` (`weights`)."""
