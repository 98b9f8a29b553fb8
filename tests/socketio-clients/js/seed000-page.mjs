// Seed 000's page for seed000.test.mjs: the seed document's "Complete Client Implementation
// Example", its `WebSocketClient` class as the document gives it, in a browser-like scope made
// of the npm socket.io-client and recorders of what the page is asked to show.
//
// The document's class calls page methods it does not define (getUserTenants,
// handleTenantStatusChanged, markAllNotificationsAsRead, refreshTenantList, updateTenantInUI,
// updateTenantsList, updateNotificationsList, showReconnectionError): the page here defines them.

import { io as ioClient } from 'socket.io-client';

import { Recorder, record } from './harness.mjs';

/** The pages opened, until closePages(). */
const pages = new Set();

/** Closes every page opened and not closed yet: use it in afterEach. */
export function closePages() {
  for (const page of pages) page.close();
  pages.clear();
}

/** The class's page methods that the document leaves to the page (the UI helpers, and those
 * it calls without defining: getUserTenants aside, they are recorded in the page's `ui`). */
const PAGE_METHODS = [
  'addNotificationToUI', 'markNotificationAsRead', 'removeNotification', 'markAllNotificationsAsRead',
  'showConnectionStatus', 'showErrorMessage', 'showReconnectionError', 'playNotificationSound',
  'refreshTenantList', 'updateTenantInUI', 'handleTenantStatusChanged', 'updateTenantsList',
  'updateNotificationsList',
];

/**
 * Opens the seed's page on `server`: its `WebSocketClient`, unchanged, in a browser-like
 * scope. The browser's `io()` connects to the page's own origin with the page's cookies
 * (`cookie`) or, instead, `auth: { token }`, and sends the `Origin` header only when given
 * (`origin`: a browser's, see the test of the page on the gateway's own origin); `transports`
 * replaces the class's only where a test says the network blocks WebSocket. The page's
 * `document` records what the class writes to its elements, its console is quiet, and its
 * timers are cleared when the page closes. `tenants`: the Odoo tenants getUserTenants() lists.
 * Returns the client, with `rec` (every event its socket got), `ui` (what the page showed)
 * and `close()`.
 */
export function openPage(server, { cookie, token, origin, tenants = [], transports, name = 'page' }) {
  const ui = new Recorder(`${name} UI`);
  const io = (opts) => ioClient(server.url, {
    ...opts,
    ...(transports ? { transports } : {}),
    extraHeaders: {
      ...(origin === undefined ? {} : { origin }),
      ...(cookie === undefined ? {} : { cookie }),
    },
    ...(token === undefined ? {} : { auth: { token } }),
  });
  const document = {
    getElementById: (id) => ({
      set textContent(value) {
        ui.push(`#${id}`, [value]);
      },
    }),
  };
  const console = { log() {}, error() {} };
  const timers = new Set();
  const setTimeout = (fn, ms) => {
    const timer = globalThis.setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
    return timer;
  };

  // The document's class, as it is (only indented).
  class WebSocketClient {
    constructor() {
      this.socket = null;
      this.connected = false;
      this.reconnectAttempts = 0;
      this.maxReconnectAttempts = 5;
      this.reconnectDelay = 1000;

      this.init();
    }

    init() {
      this.socket = io({
        transports: ['websocket', 'polling'],
        upgrade: true
      });

      this.setupEventHandlers();
    }

    setupEventHandlers() {
      // Connection events
      this.socket.on('connect', () => {
        console.log('WebSocket connected');
        this.connected = true;
        this.reconnectAttempts = 0;
        this.onConnected();
      });

      this.socket.on('disconnect', (reason) => {
        console.log('WebSocket disconnected:', reason);
        this.connected = false;
        this.onDisconnected(reason);

        if (reason === 'io server disconnect') {
          // Server initiated disconnect, try to reconnect
          this.handleReconnection();
        }
      });

      this.socket.on('connect_error', (error) => {
        console.error('WebSocket connection error:', error);
        this.handleReconnection();
      });

      // Notification events
      this.socket.on('new_notification', (notification) => {
        this.handleNewNotification(notification);
      });

      this.socket.on('notification_counts', (counts) => {
        this.updateNotificationCounts(counts);
      });

      this.socket.on('notification_read', (data) => {
        this.markNotificationAsRead(data.notification_id);
      });

      this.socket.on('notification_dismissed', (data) => {
        this.removeNotification(data.notification_id);
      });

      this.socket.on('all_notifications_read', (data) => {
        this.markAllNotificationsAsRead(data.count);
      });

      // Tenant events
      this.socket.on('tenant_created', (data) => {
        this.handleTenantCreated(data);
      });

      this.socket.on('tenant_updated', (data) => {
        this.handleTenantUpdated(data);
      });

      this.socket.on('tenant_status_changed', (data) => {
        this.handleTenantStatusChanged(data);
      });

      // Data refresh events
      this.socket.on('data_refreshed', (data) => {
        this.handleDataRefreshed(data);
      });

      // Error handling
      this.socket.on('error', (error) => {
        console.error('WebSocket error:', error);
        this.handleError(error);
      });
    }

    // Connection management
    onConnected() {
      // Subscribe to tenant updates for current user's tenants
      this.subscribeToTenantUpdates();

      // Request initial notification counts
      this.getNotificationCounts();
    }

    onDisconnected(reason) {
      // Handle disconnection UI updates
      this.showConnectionStatus(false);
    }

    handleReconnection() {
      if (this.reconnectAttempts < this.maxReconnectAttempts) {
        this.reconnectAttempts++;
        const delay = this.reconnectDelay * Math.pow(2, this.reconnectAttempts - 1);

        setTimeout(() => {
          console.log(`Attempting reconnection ${this.reconnectAttempts}/${this.maxReconnectAttempts}`);
          this.socket.connect();
        }, delay);
      } else {
        console.error('Max reconnection attempts reached');
        this.showReconnectionError();
      }
    }

    // Notification methods
    getNotificationCounts() {
      if (this.connected) {
        this.socket.emit('get_notification_counts');
      }
    }

    markNotificationRead(notificationId) {
      if (this.connected) {
        this.socket.emit('mark_notification_read', {
          notification_id: notificationId
        });
      }
    }

    dismissNotification(notificationId) {
      if (this.connected) {
        this.socket.emit('dismiss_notification', {
          notification_id: notificationId
        });
      }
    }

    // Data refresh methods
    refreshTenants(forceRefresh = false) {
      if (this.connected) {
        this.socket.emit('request_data_refresh', {
          type: 'tenants',
          force_refresh: forceRefresh
        });
      }
    }

    refreshNotifications(forceRefresh = false) {
      if (this.connected) {
        this.socket.emit('request_data_refresh', {
          type: 'notifications',
          force_refresh: forceRefresh
        });
      }
    }

    // Subscription methods
    subscribeToTenantUpdates(tenantId = null) {
      if (this.connected) {
        if (tenantId) {
          this.socket.emit('subscribe_tenant_updates', {
            tenant_id: tenantId
          });
        } else {
          // Subscribe to all user's tenants
          // This would typically be called with each tenant ID
          this.getUserTenants().forEach(tenant => {
            this.socket.emit('subscribe_tenant_updates', {
              tenant_id: tenant.id
            });
          });
        }
      }
    }

    unsubscribeFromTenantUpdates(tenantId) {
      if (this.connected) {
        this.socket.emit('unsubscribe_tenant_updates', {
          tenant_id: tenantId
        });
      }
    }

    // Event handlers (implement these based on your UI)
    handleNewNotification(notification) {
      // Add notification to UI
      console.log('New notification:', notification);
      this.addNotificationToUI(notification);
      this.playNotificationSound();
    }

    updateNotificationCounts(counts) {
      // Update notification badge/counter
      document.getElementById('notification-count').textContent = counts.unread;
      document.getElementById('urgent-count').textContent = counts.urgent;
    }

    handleTenantCreated(data) {
      // Handle new tenant creation
      console.log('Tenant created:', data);
      this.refreshTenantList();
    }

    handleTenantUpdated(data) {
      // Handle tenant update
      console.log('Tenant updated:', data);
      this.updateTenantInUI(data.tenant);
    }

    handleDataRefreshed(data) {
      // Handle refreshed data
      switch (data.type) {
        case 'tenants':
          this.updateTenantsList(data.data);
          break;
        case 'notifications':
          this.updateNotificationsList(data.data.notifications);
          this.updateNotificationCounts(data.data.counts);
          break;
      }
    }

    handleError(error) {
      // Show error message to user
      this.showErrorMessage(error.message);
    }

    // UI helper methods (implement these based on your frontend)
    addNotificationToUI(notification) {
      // Implementation depends on your UI framework
    }

    markNotificationAsRead(notificationId) {
      // Update UI to show notification as read
    }

    removeNotification(notificationId) {
      // Remove notification from UI
    }

    showConnectionStatus(connected) {
      // Show connection status indicator
    }

    showErrorMessage(message) {
      // Show error message to user
    }

    playNotificationSound() {
      // Play notification sound if enabled
    }
  }

  // The page's part: the user's tenants, and a UI recording what it is asked to show.
  class Page extends WebSocketClient {
    getUserTenants() {
      return tenants.map((id) => ({ id }));
    }
  }
  for (const method of PAGE_METHODS) {
    Page.prototype[method] = function (...args) {
      ui.push(method, args);
    };
  }

  const page = new Page();
  page.rec = record(page.socket, name);
  page.ui = ui;
  page.close = () => {
    for (const timer of timers) clearTimeout(timer);
    page.socket.close();
  };
  pages.add(page);
  return page;
}
