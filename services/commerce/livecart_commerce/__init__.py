"""Livecart commerce: catalog, live product pinning, orders, flash sales, red packets, lotteries."""
