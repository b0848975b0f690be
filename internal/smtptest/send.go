package smtptest

import (
	"fmt"
	"net"
	"net/smtp"
	"time"
)

// Send offers raw to the SMTP server at addr in one session (EHLO, MAIL, RCPT, DATA, QUIT),
// the whole session bounded by timeout. An error names the step that failed.
func Send(addr, from, rcpt string, raw []byte, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	// net/smtp adds BODY=8BITMIME and SMTPUTF8 to MAIL when the server offers them.
	if err := c.Hello("client.smtptest.test"); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		return fmt.Errorf("RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(raw); err != nil {
		return fmt.Errorf("DATA write: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	c.Quit() // the message is accepted; a QUIT problem does not change that
	return nil
}
