"""The rec layer and the recurrent units it runs."""
