// The browser client is built in client/; this placeholder keeps the routes whole.
