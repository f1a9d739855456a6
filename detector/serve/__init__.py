"""The browser view of a live run (`--serve`): the server, its page, and the controls it shares with the
window."""
