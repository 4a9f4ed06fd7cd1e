"""HTTP endpoints, one module per area: public API, link pages, health, dev mail catcher."""
