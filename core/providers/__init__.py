"""Price providers: synthetic, CSV and yfinance behind one interface (see ``base``)."""
